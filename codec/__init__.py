"""The payload codec: encryption of Temporal payloads, shared by the API, the worker and the CLI."""
