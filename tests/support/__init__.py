"""Shared test helpers: service URLs, throwaway databases, the in-process app."""
