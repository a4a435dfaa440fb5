"""Several machines, one account: the optional link to a Valkey/Redis server that shares quota state."""
