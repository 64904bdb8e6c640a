"""Reports from records: the frame of a suite's runs, its columns and statistics, the table
model and its captions, the ledger of published numbers, LaTeX, Markdown, HTML and the figures."""
