//! Simulated session pairs: two sessions, in-memory wires, a virtual clock.
