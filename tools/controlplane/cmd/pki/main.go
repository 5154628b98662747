// Command pki writes the certificates and keys a throwaway local control plane needs:
// a CA, the kube-apiserver serving certificate (SAN 127.0.0.1 and localhost), an admin client
// certificate in group system:masters, and the
// service-account signing key pair. Standard library only, so it builds in a second.
//
// Usage: pki -dir DIR
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

func main() {
	dir := flag.String("dir", "", "folder to write the PEM files into")
	flag.Parse()
	if *dir == "" {
		log.Fatal("-dir is required")
	}
	caKey, caCert := newCA()
	writeCert(*dir, "ca", caKey, caCert)
	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	issue(*dir, "apiserver", serving, caKey, caCert)
	issue(*dir, "admin", client("admin", "system:masters"), caKey, caCert)
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	check(err)
	write(*dir, "sa.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey))
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	check(err)
	write(*dir, "sa.pub", "PUBLIC KEY", pub)
}

func client(user, group string) *x509.Certificate {
	name := pkix.Name{CommonName: user}
	if group != "" {
		name.Organization = []string{group}
	}
	return &x509.Certificate{Subject: name, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
}

func newCA() (*ecdsa.PrivateKey, *x509.Certificate) {
	key := newKey()
	template := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "apitoken-operator-local-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	check(err)
	cert, err := x509.ParseCertificate(der)
	check(err)
	return key, cert
}

func issue(dir, name string, template *x509.Certificate, caKey *ecdsa.PrivateKey, ca *x509.Certificate) {
	key := newKey()
	template.SerialNumber = serial()
	template.NotBefore = time.Now().Add(-time.Hour)
	template.NotAfter = time.Now().Add(10 * 365 * 24 * time.Hour)
	template.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
	check(err)
	cert, err := x509.ParseCertificate(der)
	check(err)
	writeCert(dir, name, key, cert)
}

func writeCert(dir, name string, key *ecdsa.PrivateKey, cert *x509.Certificate) {
	der, err := x509.MarshalECPrivateKey(key)
	check(err)
	write(dir, name+".key", "EC PRIVATE KEY", der)
	write(dir, name+".crt", "CERTIFICATE", cert.Raw)
}

func write(dir, file, kind string, der []byte) {
	check(os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600))
}

func newKey() *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	return key
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	check(err)
	return n
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
