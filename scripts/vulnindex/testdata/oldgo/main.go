// Command oldgo renders an html/template: built with go1.26.8, whose
// html/template has a known vulnerability, it makes govulncheck report
// one, which proves the offline database is read.
package main

import (
	"html/template"
	"os"
)

func main() {
	t := template.Must(template.New("x").Parse("<p>{{.}}</p>\n"))
	_ = t.Execute(os.Stdout, "hello")
}
