"""The live station page: state from the event stream (:mod:`.state`), its HTTP/SSE server (:mod:`.server`)."""
