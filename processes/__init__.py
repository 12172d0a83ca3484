"""OGC API – Processes plugins, job queue and worker (later issues)."""
