"""The mapping language: which events go to Rokt (triggers) and what each field is made of
(paths, fields, hashing, mappings); `pipeline` runs an event through the mappings."""
