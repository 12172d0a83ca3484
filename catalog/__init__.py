"""pycsw mount, record generation and OGC API – Records (later issues)."""
