"""Running workflows: the engine (pure), executors, and the detached job process."""
