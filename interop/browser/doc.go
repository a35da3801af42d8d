// Package browser tests the durablefetch demo (examples/fetchdemo) in a
// real headless Chromium driven with github.com/chromedp/chromedp: a chat
// page asks a slow fake LLM through durastream's durablefetch API, the tab
// is closed mid-answer and the page reopened in a new tab, and the whole
// answer must be there, still streaming, with the upstream called once.
//
// TestMain builds ./cmd/durastream and ./examples/fetchdemo from the
// repository root (../..), starts durastream serve (--durability sync, a
// fresh data directory, free 127.0.0.1 ports for --addr and --fetch-addr,
// --proxy-allow 'http://127.0.0.1:*/**') and the demo (its upstream and
// page on free 127.0.0.1 ports), runs the tests and stops both. Their logs
// are printed when a test fails (always with INTEROP_SHOW_LOGS=1).
//
// Chromium: $CHROMIUM if set, else /usr/bin/chromium (Debian package
// chromium: apt-get install -y chromium), else chromium or chromium-browser
// on $PATH. Without one the tests skip and say so; run.sh installs the
// package first when it is missing and it runs as root with apt-get.
package browser
