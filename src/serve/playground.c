/* The playground page, src/serve/playground.html, embedded in the binary by
 * the assembler's .incbin (the path is relative to the repository root, where
 * make runs the compiler; the Makefile lists the page as a prerequisite of
 * this object so an edit rebuilds it). A NUL follows the page. */
#include "serve/server.h"

__asm__(".section .rodata\n"
        ".balign 16\n"
        ".globl tuna_serve_playground_begin\n"
        ".hidden tuna_serve_playground_begin\n"
        "tuna_serve_playground_begin:\n"
        ".incbin \"src/serve/playground.html\"\n"
        ".globl tuna_serve_playground_end\n"
        ".hidden tuna_serve_playground_end\n"
        "tuna_serve_playground_end:\n"
        ".byte 0\n"
        ".previous\n");

extern const char tuna_serve_playground_begin[];
extern const char tuna_serve_playground_end[];

const char *tuna_serve_playground_html(size_t *len) {
    *len = (size_t)(tuna_serve_playground_end - tuna_serve_playground_begin);
    return tuna_serve_playground_begin;
}
