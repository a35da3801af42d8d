package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"testing"
	"time"
)

func TestProxyPresignRoundTrip(t *testing.T) {
	const secret = "0123456789abcdef-secret"
	s := newSigner(secret)
	now := time.Unix(1_800_000_000, 0)
	id := "3f2c1e4b-5a6d-4e7f-8091-a2b3c4d5e6f7"
	exp := now.Add(time.Hour).Unix()
	sig := s.sign(id, exp)
	es := strconv.FormatInt(exp, 10)
	if f := s.verify(id, es, sig, now); f != nil {
		t.Fatalf("genuine signature refused: %v", f.code)
	}
	if f := s.verify(id, es, sig, time.Unix(exp, 0)); f != errSignatureExpired {
		t.Errorf("at expiry: %v, want SIGNATURE_EXPIRED", f)
	}
	if f := s.verify(id, es, sig, now.Add(2*time.Hour)); f != errSignatureExpired {
		t.Errorf("after expiry: %v, want SIGNATURE_EXPIRED", f)
	}
	// Another secret's signatures are invalid.
	if f := newSigner(secret+"x").verify(id, es, sig, now); f != errSignatureInvalid {
		t.Errorf("other secret: %v", f)
	}
	// The signing key is derived: a signature is not an HMAC under the
	// secret itself.
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(id + "." + es))
	if raw := base64.RawURLEncoding.EncodeToString(m.Sum(nil)); raw == sig {
		t.Error("the service secret is the signing key")
	}
	// Every other spelling of the same MAC is refused.
	mac, _ := base64.RawURLEncoding.DecodeString(sig)
	for _, alt := range []string{
		base64.URLEncoding.EncodeToString(mac),
		base64.RawStdEncoding.EncodeToString(mac),
		sig[:len(sig)-1] + string(sig[len(sig)-1]^1),
	} {
		if alt != sig && s.verify(id, es, alt, now) == nil {
			t.Errorf("alternative spelling %q accepted", alt)
		}
	}
	if !s.secretOK(secret) || s.secretOK(secret[:len(secret)-1]) || s.secretOK("") {
		t.Error("secretOK")
	}
}

// TestProxyPresignConstantTime checks, in the source, that signatures are
// compared with hmac.Equal (auth/signedurl.go) and the service secret with
// subtle.ConstantTimeCompare, and that neither file compares strings or
// byte slices otherwise (==, !=, bytes.Equal, strings.EqualFold on a
// credential would leak timing).
func TestProxyPresignConstantTime(t *testing.T) {
	fset := token.NewFileSet()
	var decls []ast.Decl
	for _, name := range []string{"presign.go", "../auth/signedurl.go"} {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		decls = append(decls, f.Decls...)
	}
	calls := map[string]map[string]bool{} // function -> "pkg.Func" called
	for _, d := range decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		seen := map[string]bool{}
		calls[fd.Name.Name] = seen
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok {
					if x, ok := sel.X.(*ast.Ident); ok {
						seen[x.Name+"."+sel.Sel.Name] = true
					}
				}
			case *ast.BinaryExpr:
				if n.Op == token.EQL || n.Op == token.NEQ {
					if lit, ok := n.Y.(*ast.BasicLit); ok && lit.Value == `""` {
						return true // an emptiness check
					}
					for _, side := range []ast.Expr{n.X, n.Y} {
						if id, ok := side.(*ast.Ident); ok && (id.Name == "signature" || id.Name == "presented" || id.Name == "want" || id.Name == "secret") {
							t.Errorf("%s: %s compared with %s", fset.Position(n.Pos()), id.Name, n.Op)
						}
					}
				}
			}
			return true
		})
	}
	if !calls["Verify"]["hmac.Equal"] {
		t.Error("auth.URLSigner.Verify does not compare signatures with hmac.Equal")
	}
	if !calls["secretOK"]["subtle.ConstantTimeCompare"] {
		t.Error("secretOK does not use subtle.ConstantTimeCompare")
	}
	for fn, c := range calls {
		for _, bad := range []string{"bytes.Equal", "strings.EqualFold", "strings.Compare", "bytes.Compare"} {
			if c[bad] && (fn == "verify" || fn == "Verify" || fn == "secretOK" || fn == "serviceAuth" || fn == "presignedAuth") {
				t.Errorf("%s calls %s", fn, bad)
			}
		}
	}
}
