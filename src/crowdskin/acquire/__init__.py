"""Data acquisition: download (resumable, retried, checksum-verified, atomic), safe archive
extraction, reading from a local mirror instead of the network, and URL-list datasets."""
