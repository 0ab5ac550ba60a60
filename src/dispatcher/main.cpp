#include <cstdio>
int main() { std::puts("imgate dispatcher: not built yet"); return 0; }
