"""A small code-review assistant with the field report's three call sites, written against ``lab.llm`` only."""
