"""Memory: what the agent learned about a video, kept across questions.

The store, retrieval and the per-video index live here (see DESIGN.md, Memory).
"""
