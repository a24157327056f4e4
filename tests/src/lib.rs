//! Helpers for the end-to-end tests (processes, ports, temp dirs).
