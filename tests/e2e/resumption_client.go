// resumption_client.go: Go crypto/tls resuming a session through keyless-frontend (issue 11).
// Usage: go run resumption_client.go PORT CA.pem - two connections sharing a ClientSessionCache;
// prints "first resumed=false" and "second resumed=true|false".
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	pem, err := os.ReadFile(os.Args[2])
	if err != nil {
		panic(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	cfg := &tls.Config{
		RootCAs:            roots,
		ServerName:         "localhost",
		MinVersion:         tls.VersionTLS13,
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
	}
	for _, name := range []string{"first", "second"} {
		d := &net.Dialer{Timeout: 10 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", "127.0.0.1:"+os.Args[1], cfg)
		if err != nil {
			panic(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")); err != nil {
			panic(err)
		}
		// Reading to the end also reads the NewSessionTickets into the cache.
		if _, err := io.Copy(io.Discard, c); err != nil {
			panic(err)
		}
		fmt.Printf("%s resumed=%v\n", name, c.ConnectionState().DidResume)
		c.Close()
	}
}
