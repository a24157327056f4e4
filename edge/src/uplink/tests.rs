use super::state::{Input, Mode};
use super::*;

const LIVE: u64 = 10;

#[test]
fn mode_transition_table() {
    use Input::*;
    use Mode::*;
    let big = Connected { backlog: 11 };
    let small = Connected { backlog: 10 };
    let table = [
        (Offline, big, DrainingBacklog),
        (Offline, small, Online),
        (Offline, CaughtUp, Offline),
        (Offline, BacklogGrew, Offline),
        (Offline, Disconnected, Offline),
        (Offline, Shutdown, ShuttingDown),
        (Online, big, DrainingBacklog),
        (Online, small, Online),
        (Online, CaughtUp, Online),
        (Online, BacklogGrew, DrainingBacklog),
        (Online, Disconnected, Offline),
        (Online, Shutdown, ShuttingDown),
        (DrainingBacklog, big, DrainingBacklog),
        (DrainingBacklog, small, Online),
        (DrainingBacklog, CaughtUp, Online),
        (DrainingBacklog, BacklogGrew, DrainingBacklog),
        (DrainingBacklog, Disconnected, Offline),
        (DrainingBacklog, Shutdown, ShuttingDown),
        (ShuttingDown, big, ShuttingDown),
        (ShuttingDown, CaughtUp, ShuttingDown),
        (ShuttingDown, Disconnected, ShuttingDown),
    ];
    for (from, input, to) in table {
        assert_eq!(from.next(input, LIVE), to, "{from:?} + {input:?}");
    }
    assert!(Online.sends() && DrainingBacklog.sends());
    assert!(!Offline.sends() && !ShuttingDown.sends());
}

#[test]
fn pkids_map_to_requests_in_order_and_the_frontier_moves_only_when_contiguous() {
    let mut f = InFlight::new(0, 0);
    f.requested(Tag::Control);
    f.requested(Tag::Records {
        stream: Stream::Telemetry,
        from: 1,
        to: 5,
    });
    f.requested(Tag::Records {
        stream: Stream::Telemetry,
        from: 6,
        to: 9,
    });
    f.requested(Tag::Reported { generation: 3 });
    for pkid in [1, 2, 3, 4] {
        f.outgoing(pkid);
    }
    assert_eq!(f.batches(), 2);
    // The second batch is acknowledged first: nothing may be deleted yet.
    assert_eq!(f.puback(3), Acked::Records);
    assert_eq!(f.puback(1), Acked::Nothing);
    assert_eq!(
        f.puback(2),
        Acked::Frontier {
            stream: Stream::Telemetry,
            up_to: 9
        }
    );
    assert_eq!(f.puback(4), Acked::Reported { generation: 3 });
    assert_eq!(f.puback(4), Acked::Nothing, "duplicate puback is ignored");
    assert!(f.idle());
    assert_eq!(f.batches(), 0);
}

#[test]
fn after_a_reset_old_pkids_mean_nothing_and_resent_ranges_still_count() {
    let mut f = InFlight::new(10, 0);
    f.requested(Tag::Records {
        stream: Stream::Events,
        from: 1,
        to: 4,
    });
    f.outgoing(7);
    f.reset();
    assert_eq!(f.puback(7), Acked::Nothing, "pkid of a dead session");
    f.requested(Tag::Records {
        stream: Stream::Events,
        from: 1,
        to: 6,
    });
    f.outgoing(1);
    assert_eq!(
        f.puback(1),
        Acked::Frontier {
            stream: Stream::Events,
            up_to: 6
        }
    );
    assert_eq!(f.frontier(Stream::Telemetry), 10);
}

#[test]
fn dropped_ranges_can_be_skipped_to_move_the_frontier() {
    let mut f = InFlight::new(0, 0);
    f.requested(Tag::Records {
        stream: Stream::Telemetry,
        from: 5,
        to: 8,
    });
    f.outgoing(1);
    assert_eq!(f.puback(1), Acked::Records);
    assert_eq!(
        f.skip(Stream::Telemetry, 1, 4),
        Acked::Frontier {
            stream: Stream::Telemetry,
            up_to: 8
        }
    );
}
