"""The Ray actors of the runtime: agents that each own a desktop (built on ``orchestrator``)."""
