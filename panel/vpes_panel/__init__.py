"""The customer panel: a person manages their own mail server in a browser."""
