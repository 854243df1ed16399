//! gRPC between the layers (being written).
