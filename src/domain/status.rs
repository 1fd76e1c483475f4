//! Statuses and the rules that derive what other users see (docs/api.md §1).

use std::fmt;

/// A presence status as shown to others, or chosen by a user (`offline` = invisible).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Online,
    Away,
    Busy,
    Offline,
}

impl Status {
    /// The statuses a user may choose, as named in error messages.
    pub const CHOICES: &'static str = "online | away | busy | offline";

    /// Parses the wire name of a status.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "online" => Some(Status::Online),
            "away" => Some(Status::Away),
            "busy" => Some(Status::Busy),
            "offline" => Some(Status::Offline),
            _ => None,
        }
    }

    /// Returns the wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Away => "away",
            Status::Busy => "busy",
            Status::Offline => "offline",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status a single connection reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnStatus {
    Online,
    Away,
}

impl ConnStatus {
    /// Parses the wire name of a connection status.
    pub fn parse(s: &str) -> Option<ConnStatus> {
        match s {
            "online" => Some(ConnStatus::Online),
            "away" => Some(ConnStatus::Away),
            _ => None,
        }
    }

    /// Returns the wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnStatus::Online => "online",
            ConnStatus::Away => "away",
        }
    }
}

/// `statusConnection`: `online` if any connection is online, else `away` if any is
/// away, else `offline`.
pub fn connection_status(connections: impl IntoIterator<Item = ConnStatus>) -> Status {
    let mut best = Status::Offline;
    for status in connections {
        match status {
            ConnStatus::Online => return Status::Online,
            ConnStatus::Away => best = Status::Away,
        }
    }
    best
}

/// `status`, what others see: `offline` without a live connection, the connection
/// status when the user chose `online`, otherwise the chosen status.
///
/// ```
/// use presenced::domain::status::visible_status;
/// use presenced::domain::Status::*;
///
/// assert_eq!(visible_status(Online, Away), Away); // chose online, connected but idle
/// assert_eq!(visible_status(Busy, Online), Busy); // a choice other than online shows
/// assert_eq!(visible_status(Busy, Offline), Offline); // no connection, no presence
/// ```
pub fn visible_status(chosen: Status, connection: Status) -> Status {
    match (connection, chosen) {
        (Status::Offline, _) => Status::Offline,
        (connection, Status::Online) => connection,
        (_, chosen) => chosen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnStatus as C;
    use Status::*;

    #[test]
    fn connection_status_prefers_online_then_away_then_offline() {
        let table: &[(&[ConnStatus], Status)] = &[
            (&[], Offline),
            (&[C::Away], Away),
            (&[C::Online], Online),
            (&[C::Away, C::Away], Away),
            (&[C::Away, C::Online], Online),
            (&[C::Online, C::Away], Online),
        ];
        for (conns, want) in table {
            assert_eq!(connection_status(conns.iter().copied()), *want, "{conns:?}");
        }
    }

    /// The whole truth table: connections x chosen status -> visible status.
    #[test]
    fn visible_status_truth_table() {
        let table = [
            // no connection: always offline
            ((Offline, Online), Offline),
            ((Offline, Away), Offline),
            ((Offline, Busy), Offline),
            ((Offline, Offline), Offline),
            // an away connection
            ((Away, Online), Away),
            ((Away, Away), Away),
            ((Away, Busy), Busy),
            ((Away, Offline), Offline),
            // an online connection
            ((Online, Online), Online),
            ((Online, Away), Away),
            ((Online, Busy), Busy),
            ((Online, Offline), Offline),
        ];
        for ((connection, chosen), want) in table {
            assert_eq!(
                visible_status(chosen, connection),
                want,
                "connection {connection}, chosen {chosen}"
            );
        }
    }

    #[test]
    fn status_names_round_trip_and_others_are_rejected() {
        for s in [Online, Away, Busy, Offline] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        for bad in ["", "ONLINE", "invisible", "dnd"] {
            assert_eq!(Status::parse(bad), None);
        }
        assert_eq!(ConnStatus::parse("busy"), None);
        assert_eq!(ConnStatus::parse("away"), Some(C::Away));
    }
}
