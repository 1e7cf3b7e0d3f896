"""The bus: event types, validation, the journal, the broker process and the Publisher client."""
