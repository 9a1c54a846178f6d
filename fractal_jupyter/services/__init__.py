"""Domain logic per resource: plain async functions of a DB session and the calling user."""
