"""Task packages, without a database: pip and venv building, manifests and wheels, freezes and
reinstalls, and the logs of the commands that do it.

`services/task_collection.py` and `services/task_group.py` hold the database side: they decide
what to build and record what was built.
"""
