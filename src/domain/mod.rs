//! Domain types: identifiers, statuses and the status rules, profiles, token hashes.
//!
//! Everything here is pure: parsed at the HTTP edge, consumed by the store, no I/O.

pub mod from_date;
pub mod ids;
pub mod profile;
pub mod status;
pub mod token;

pub use ids::{ConnectionId, IdError, InstanceId, UserId, Username};
pub use profile::{Profile, ProfileError, StatusText};
pub use status::{ConnStatus, Status};
pub use token::{TokenError, TokenHash};
