"""`mcloud demo`: a demo tenant (a sports brand) configured over the public HTTP API, the Rachel story of
DOMAIN.md played step by step (story.py, reusable by tests), and a behaviour generator (generate.py)."""
