//! The peer IRC servers: installing, configuring, starting and stopping them.
