"""Small helpers shared by every stage (file I/O, hardware description)."""
