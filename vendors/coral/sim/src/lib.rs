//! The simulated Coral ReefStack.
