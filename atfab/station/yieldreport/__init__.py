"""The yield report: figures from unit reports (:mod:`.stats`), plots (:mod:`.plots`), the HTML file (:mod:`.html`)."""
