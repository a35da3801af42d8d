package server

// SetProxyClosedSeen sets the test hook proxyClosedSeen.
func SetProxyClosedSeen(s *Server, f func(id string)) { s.proxyClosedSeen = f }
