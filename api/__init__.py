"""The Starlette app: JSON API, webhooks, health."""
