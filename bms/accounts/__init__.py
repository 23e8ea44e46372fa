"""Accounts: the built-in roles (groups viewer, operator, engineer, administrator) and what each may do."""
