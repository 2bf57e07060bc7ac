/* placeholder: not written yet */
typedef int dxb_placeholder_t;
