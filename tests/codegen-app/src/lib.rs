//! A small application whose code comes from `proto/app.proto` through fluxon-codegen.
