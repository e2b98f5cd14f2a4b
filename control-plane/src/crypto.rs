//! Cryptography of the control plane: passwords (argon2id), provider secrets at rest (AES-256-GCM
//! envelope encryption under the master key), and the random tokens handed to users.

pub mod password;
pub mod secrets;
pub mod tokens;
