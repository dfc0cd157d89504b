"""Persistence: tables, sessions, repositories, pointer-swap publishing and the artifact store."""
