"""Pure building blocks: errors, ids, clock, tokens, limits. No I/O."""
