// Evaluates Argo CD deep links the way Argo CD's server does
// (server/deeplinks/deeplinks.go): the `if` condition with expr, the `url` with
// text/template and sprig's generic functions (less env, expandenv and
// getHostByName), over {"application": app, "app": app}. The versions in go.mod
// are Argo CD 2.8.0's, the oldest release with sprig in deep links.
//
//	deeplinks <links.yaml> <application.json>
//
// Prints one JSON object per link: {"title", "shown", "url", "error"}.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	"github.com/antonmedv/expr"
	"sigs.k8s.io/yaml"
)

type link struct {
	Title     string  `json:"title"`
	URL       string  `json:"url"`
	Condition *string `json:"if,omitempty"`
}

type result struct {
	Title string `json:"title"`
	Shown bool   `json:"shown"`
	URL   string `json:"url,omitempty"`
	Error string `json:"error,omitempty"`
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: deeplinks <links.yaml> <application.json>")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	must(err)
	var links []link
	must(yaml.Unmarshal(raw, &links))
	rawApp, err := os.ReadFile(os.Args[2])
	must(err)
	var app map[string]any
	must(json.Unmarshal(rawApp, &app))

	funcs := sprig.GenericFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	delete(funcs, "getHostByName")
	data := map[string]any{"application": app, "app": app}

	out := json.NewEncoder(os.Stdout)
	for _, l := range links {
		r := result{Title: l.Title, Shown: true}
		if l.Condition != nil {
			v, err := expr.Eval(*l.Condition, data)
			if err != nil {
				r.Shown, r.Error = false, "condition: "+err.Error()
			} else if b, ok := v.(bool); !ok {
				r.Shown, r.Error = false, "condition is not a boolean"
			} else {
				r.Shown = b
			}
		}
		if r.Shown {
			t, err := template.New("deep-link").Funcs(funcs).Parse(l.URL)
			if err != nil {
				r.Shown, r.Error = false, "template: "+err.Error()
			} else {
				var buf bytes.Buffer
				if err := t.Execute(&buf, data); err != nil {
					r.Shown, r.Error = false, "template: "+err.Error()
				} else {
					r.URL = buf.String()
				}
			}
		}
		must(out.Encode(r))
	}
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
