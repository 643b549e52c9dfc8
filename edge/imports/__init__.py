"""`rokt-edge import`: rows of a warehouse export through the one pipeline (see `runner`)."""
