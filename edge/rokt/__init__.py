"""Everything that turns a canonical event into what Rokt receives, and sends it."""
