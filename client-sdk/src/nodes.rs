//! Which server address to try: the one the client was given, then the deployment's other nodes
//! ([`ClientConfig::nodes`](crate::ClientConfig)), names resolved at each attempt.

use std::net::SocketAddr;

/// Every address the client may connect to, `first` first, without repeats, of `first`'s
/// family (the client's socket speaks one). A name that does not resolve is skipped (and
/// logged): the others may still answer.
pub(crate) async fn candidates(first: SocketAddr, nodes: &[String]) -> Vec<SocketAddr> {
    let mut out = vec![first];
    for node in nodes {
        match tokio::net::lookup_host(node.as_str()).await {
            Ok(addrs) => {
                for addr in addrs {
                    if addr.is_ipv4() == first.is_ipv4() && !out.contains(&addr) {
                        out.push(addr);
                    }
                }
            }
            Err(e) => tracing::warn!(%node, error = %e, "cannot resolve a node address"),
        }
    }
    out
}

/// The address of reconnection attempt `attempt` (0-based) after the connection to `current`
/// was lost: the next candidate after `current` first (the one just lost is the likeliest to be
/// down), then round the list, `current` last. With one candidate, always that one.
pub(crate) fn pick(candidates: &[SocketAddr], current: SocketAddr, attempt: u32) -> SocketAddr {
    let n = candidates.len();
    if n == 0 {
        return current;
    }
    // When `current` is not among them (a name that resolves elsewhere now), start at the top.
    let start = candidates
        .iter()
        .position(|a| *a == current)
        .map_or(0, |i| i + 1);
    let step = usize::try_from(attempt).unwrap_or(usize::MAX) % n;
    candidates[(start + step) % n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn failover_starts_with_the_next_node_and_comes_round() {
        let all = [addr(1), addr(2), addr(3)];
        let order: Vec<u16> = (0..6).map(|k| pick(&all, addr(2), k).port()).collect();
        assert_eq!(order, [3, 1, 2, 3, 1, 2]);
        let from_last: Vec<u16> = (0..3).map(|k| pick(&all, addr(3), k).port()).collect();
        assert_eq!(from_last, [1, 2, 3]);
    }

    #[test]
    fn one_address_is_always_retried() {
        assert_eq!(pick(&[addr(5)], addr(5), 0), addr(5));
        assert_eq!(pick(&[addr(5)], addr(5), 7), addr(5));
        assert_eq!(pick(&[], addr(5), 1), addr(5));
    }

    #[test]
    fn an_unknown_current_address_starts_at_the_top() {
        let all = [addr(1), addr(2)];
        assert_eq!(pick(&all, addr(9), 0), addr(1));
        assert_eq!(pick(&all, addr(9), 1), addr(2));
        assert_eq!(pick(&all, addr(9), u32::MAX), all[(u32::MAX as usize) % 2]);
    }

    #[tokio::test]
    async fn candidates_resolve_dedupe_and_keep_one_family() {
        let nodes = vec![
            "127.0.0.1:2".to_owned(),
            "127.0.0.1:1".to_owned(),
            "[::1]:3".to_owned(),
            // No port: not an address (skipped without asking a resolver).
            "127.0.0.1".to_owned(),
        ];
        let found = candidates(addr(1), &nodes).await;
        assert_eq!(found, [addr(1), addr(2)]);
    }
}
