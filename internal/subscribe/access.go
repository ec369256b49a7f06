package subscribe

import "net"

// PeerOf reads who is at the other end of conn (SO_PEERCRED, SO_PEERGROUPS),
// so that other sockets of adoptwatch admit clients by the same rule as
// subscribers: PeerOf, then Authorize.
func PeerOf(conn *net.UnixConn) (Peer, error) { return peerOf(conn) }

// LookupGroup resolves a group name or number to a gid, as --socket-group does.
func LookupGroup(name string) (int, error) { return lookupGroup(name) }
