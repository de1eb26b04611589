//! Running commands: locally, and on remote nodes over SSH (see issue 3).
