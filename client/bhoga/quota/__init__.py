"""The quota model shared by the client library and the daemon: header readers, model families,
lenient value parsers. Pure functions, no I/O."""
