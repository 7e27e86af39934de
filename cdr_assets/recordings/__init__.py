"""Connect call recordings: compression with storage tiering (REFERENCE.md section 2)."""
