"""The quota model shared by the client library and the daemon: what windows mean and how they merge
(``model``), header readers (``headers``), model families (``families``), and the lenient value
parsers with the bounds every untrusted number and time is held to (``values``). Pure functions, no
I/O."""
