"""The RPC surface: the socket server, JSON-RPC dispatch and the method table."""
