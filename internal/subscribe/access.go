package subscribe

import "net"

// PeerOf reads who is at the other end of conn (SO_PEERCRED, SO_PEERGROUPS),
// so that other sockets of adoptwatch admit clients by the same rule as
// subscribers: PeerOf, then Authorize.
func PeerOf(conn *net.UnixConn) (Peer, error) { return peerOf(conn) }

// Subscribers is how many subscribers are connected now.
func (s *Server) Subscribers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// Server is the sink's server, for its counts.
func (s *Sink) Server() *Server { return s.srv }

// ProbeLine is what a starting watcher sends to a socket it finds at its
// path, to tell a live server from a stale file: a server closes such a
// connection quietly and counts nothing.
const ProbeLine = probeLine
