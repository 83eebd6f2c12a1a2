"""The HTTP deployment (Ray Serve) that exposes the agent hierarchy."""
