"""What services and operators do with checkouts, between the edges (HTTP, CLI) and the store."""
