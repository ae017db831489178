"""kefta: real-time ride pricing."""
